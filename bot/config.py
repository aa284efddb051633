"""Configuration: a TOML file, environment variables for secrets, validated at start-up.

Every key has a default, so the program runs with no file at all. A bad value stops
start-up with a message that names the key, quotes the value and says what is allowed.
Secrets (bot tokens) come only from the environment and never appear in a repr or a log.
"""

from __future__ import annotations

import dataclasses
import os
import re
import tomllib
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.intake.settings import IntakeSettings
from engine.jobs import TRAINING_METHODS
from engine.logs import LOG_FORMATS
from engine.models.families import FAMILY_NAMES, resolve_family
from engine.models.memory import QUANTIZE_MODES
from engine.models.speed import COMPILE_MODES, PREFETCH_MODES
from engine.safety.classifier import MODEL_PATH
from engine.safety.image_filter import NUDENET_LABELS

__all__ = [
    "Config",
    "ConfigError",
    "ConsentConfig",
    "DiscordConfig",
    "EngineConfig",
    "ImageFilterConfig",
    "ModelConfig",
    "ModerationConfig",
    "OperationsConfig",
    "ProvenanceConfig",
    "Secret",
    "TelegramConfig",
    "TrainingConfig",
    "WebConfig",
    "listen_address",
    "load_config",
]

ENV_PREFIX = "SELFIEBOOTH_"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


class ConfigError(ValueError):
    """A configuration value is missing, malformed or out of range."""


class Secret:
    """A string that never shows itself in a repr, a str() or a log line."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def get(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True, slots=True)
class ConsentConfig:
    # Bump the version whenever the text changes: users are asked again.
    version: str = "1"
    # A UTF-8 text file holding the consent text; empty means the text shipped with the bot.
    text_file: str = ""


@dataclass(frozen=True, slots=True)
class ModelConfig:
    # "tiny" (random weights, offline), a hub model id, or a local pipeline directory.
    base: str = "tiny"
    # "auto" guesses the family from `base`; or one of engine.models.families.FAMILY_NAMES.
    family: str = "auto"
    # The ControlNet edge control uses: "auto" is the tiny model's own (none for other
    # bases), "" turns edge control off; else a local diffusers ControlNet directory
    # (safetensors only) or a hub id.
    controlnet: str = "auto"
    # /edit's dedicated inpainting base, the family's inpainting checkpoint: a local
    # diffusers directory (safetensors only) or a hub id. "" inpaints with `base` itself.
    inpainting: str = ""

    @property
    def edge_control(self) -> bool:
        """Whether `--edges` can be asked for: a ControlNet is configured for the base."""
        return self.controlnet != "" and (self.controlnet != "auto" or self.base == "tiny")


@dataclass(frozen=True, slots=True)
class EngineConfig:
    # "auto" (CUDA when there is one), "cpu", "cuda" or "cuda:N".
    device: str = "auto"
    # Runs of a job that may end with the engine process dying before the job fails.
    max_attempts: int = 3
    # Queued and running jobs one user may hold at once.
    max_jobs_per_user: int = 3
    # Seconds the engine may take to load its model.
    start_timeout: float = 600.0
    # Seconds after which a queued training ranks with the pictures and no longer makes
    # way for them: a stream of /imagine cannot keep a training waiting longer.
    max_training_wait: float = 900.0
    # Memory options for large models on a GPU (FLUX.1 is 12B parameters): keep each
    # model on the CPU until it runs (diffusers' model CPU offload), recompute
    # activations in the backward pass instead of keeping them (training), and store
    # FLUX's transformer in fp8 ("fp8", through torchao, which must be installed).
    cpu_offload: bool = False
    gradient_checkpointing: bool = True
    quantize: str = "none"
    # torch.compile for pictures, users' LoRAs hotswapped into one compiled slot
    # (engine.models.speed): "auto" on CUDA only, "on" or "off".
    compile: str = "auto"
    # Users' LoRA files read ahead of their queued pictures, into (pinned) CPU memory,
    # while the engine makes others (engine.models.speed): "auto" on CUDA only, "on", "off".
    lora_prefetch: str = "auto"
    # Pictures of several users made in one denoising batch, at most (each with its own
    # LoRA, engine.generation.together); 0: 8 on CUDA, 1 (each job alone) elsewhere.
    batch: int = 0


@dataclass(frozen=True, slots=True)
class ClusterConfig:
    # Empty: the engine runs as a child process of the bot, and Ray is never imported.
    # "auto" (a Ray cluster started on this machine with `ray start --head`),
    # "HOST:PORT" or "ray://HOST:PORT": the engine runs as lanes on that cluster's GPUs
    # (engine.cluster; `pip install .[cluster]`).
    address: str = ""
    # Engines working the queue at once; 0: one per GPU of the cluster (or per `engine`
    # resource on machines without one), counted when the bot starts.
    lanes: int = 0


@dataclass(frozen=True, slots=True)
class TrainingConfig:
    # Accepted photos needed before /train.
    min_photos: int = 4
    # Each 0 means the model family's default recipe (engine/models/families.py).
    rank: int = 0
    alpha: int = 0
    learning_rate: float = 0.0
    steps: int = 0
    batch_size: int = 0
    # A resumable checkpoint every N steps; 0 means every tenth of the run.
    checkpoint_every: int = 0
    # A preview sample every N steps; 0 means none.
    sample_every: int = 0
    # DreamBooth's prior preservation: class images made once per base model by the model
    # itself are trained on beside the user's photos (about twice the time per step).
    prior_preservation: bool = False
    class_images: int = 100  # diffusers' train_dreambooth default num_class_images
    prior_loss_weight: float = 1.0
    # Measure how much the model looks like the user at four points of the training
    # (validation pictures, dlib descriptors), and keep the weights that look most alike.
    likeness: bool = True
    # What is learned: "lora" (the UNet's LoRA), "textual_inversion" (an embedding of the
    # trigger word only) or "pivotal" (both together).
    method: str = "lora"


@dataclass(frozen=True, slots=True)
class ModerationConfig:
    # Refused prompts within the window that suspend a user until an admin reviews them.
    strikes_to_suspend: int = 3
    strike_window_hours: float = 24.0
    # Default quotas; an admin can give one user other ones.
    images_per_day: int = 50
    trainings_per_week: int = 3
    # A token bucket per user: commands per minute, and how many may come at once.
    commands_per_minute: float = 20.0
    command_burst: int = 10
    # Keep blocked images for admin review; off, they are never stored anywhere.
    keep_blocked_images: bool = False
    # The prompt classifier this deployment uses: "" is the one shipped with the package;
    # `admin retrain-filter` writes here (a safetensors file; never pickle).
    classifier_file: str = ""

    def classifier_path(self) -> Path:
        return Path(self.classifier_file) if self.classifier_file else MODEL_PATH


# NudeNet 3 classes that block an image by default: exposed intimate parts.
DEFAULT_BLOCKED_CLASSES: dict[str, float] = {
    "FEMALE_GENITALIA_EXPOSED": 0.4,
    "MALE_GENITALIA_EXPOSED": 0.4,
    "FEMALE_BREAST_EXPOSED": 0.4,
    "BUTTOCKS_EXPOSED": 0.4,
    "ANUS_EXPOSED": 0.4,
}


@dataclass(frozen=True, slots=True)
class ImageFilterConfig:
    # NudeNet on every generated image, training preview and uploaded selfie.
    enabled: bool = True
    # NudeNet class -> the detection score at or above which an image is blocked.
    blocked_classes: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_BLOCKED_CLASSES))


@dataclass(frozen=True, slots=True)
class ProvenanceConfig:
    # The C2PA signing pair: a PEM certificate chain (the signer's certificate first) and
    # its PEM private key. Empty: a development pair made under data_dir/provenance,
    # which no one else trusts.
    certificate: str = ""
    private_key: str = ""


@dataclass(frozen=True, slots=True)
class OperationsConfig:
    # "HOST:PORT" of the HTTP endpoint serving /metrics (Prometheus) and /healthz while
    # `selfiebooth run` works; empty: none. It has no authentication: keep it private.
    listen: str = ""


@dataclass(frozen=True, slots=True)
class WebConfig:
    # "HOST:PORT" of the admin web console (bot.web) while `selfiebooth run` works; empty:
    # none. The same address as [operations] listen serves both from one server.
    listen: str = ""
    # The console's address as admins' browsers reach it (behind a reverse proxy: its
    # https URL); sign-in links start with it. Empty: http://LISTEN.
    public_url: str = ""

    def base_url(self) -> str:
        return (self.public_url or f"http://{self.listen}").rstrip("/")


@dataclass(frozen=True, slots=True)
class TelegramConfig:
    # Point these at your own Bot API server to lift the 20 MB download limit.
    api_base_url: str = "https://api.telegram.org/bot"
    file_base_url: str = "https://api.telegram.org/file/bot"
    # Telegram user ids allowed to use /admin.
    admin_ids: tuple[str, ...] = ()
    # Empty: long polling. Otherwise the public HTTPS URL Telegram posts updates to.
    webhook_url: str = ""
    webhook_listen: str = "127.0.0.1"
    webhook_port: int = 8443
    # Seconds between two edits of a progress message in one chat.
    edit_interval: float = 3.0


@dataclass(frozen=True, slots=True)
class DiscordConfig:
    api_base_url: str = "https://discord.com/api/v10"
    gateway_url: str = "wss://gateway.discord.gg/"
    # Sync commands to these guilds only (instant, for development); empty: globally.
    guild_ids: tuple[str, ...] = ()
    # Discord user ids allowed to use /admin, checked on every call.
    admin_ids: tuple[str, ...] = ()
    # default_member_permissions of /admin: who sees it in a server (a hint servers may change).
    admin_permission: str = "manage_guild"
    # Seconds between two edits of a progress message.
    edit_interval: float = 1.5


@dataclass(frozen=True, slots=True)
class Config:
    data_dir: Path = Path("data")
    log_level: str = "INFO"
    # "text" (lines for people) or "json" (one object per line, for log shippers).
    log_format: str = "text"
    consent: ConsentConfig = field(default_factory=ConsentConfig)
    intake: IntakeSettings = field(default_factory=IntakeSettings)
    model: ModelConfig = field(default_factory=ModelConfig)
    engine: EngineConfig = field(default_factory=EngineConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    moderation: ModerationConfig = field(default_factory=ModerationConfig)
    image_filter: ImageFilterConfig = field(default_factory=ImageFilterConfig)
    provenance: ProvenanceConfig = field(default_factory=ProvenanceConfig)
    operations: OperationsConfig = field(default_factory=OperationsConfig)
    web: WebConfig = field(default_factory=WebConfig)
    telegram: TelegramConfig = field(default_factory=TelegramConfig)
    discord: DiscordConfig = field(default_factory=DiscordConfig)
    # Secrets: environment only (SELFIEBOOTH_TELEGRAM_TOKEN, SELFIEBOOTH_DISCORD_TOKEN).
    telegram_token: Secret | None = field(default=None, repr=False)
    discord_token: Secret | None = field(default=None, repr=False)

    @property
    def database_path(self) -> Path:
        return self.data_dir / "selfiebooth.sqlite3"

    @property
    def blob_dir(self) -> Path:
        return self.data_dir / "blobs"

    @property
    def work_dir(self) -> Path:
        """Per-job scratch space of the engine: inputs, checkpoints, outputs."""
        return self.data_dir / "work"

    @property
    def models_dir(self) -> Path:
        return self.data_dir / "models"

    @property
    def provenance_dir(self) -> Path:
        """Where the development signing pair is made when none is configured."""
        return self.data_dir / "provenance"


_SECRET_KEYS = {"telegram_token": "TELEGRAM_TOKEN", "discord_token": "DISCORD_TOKEN"}
_SECTIONS: dict[str, type[Any]] = {
    "consent": ConsentConfig,
    "intake": IntakeSettings,
    "model": ModelConfig,
    "engine": EngineConfig,
    "cluster": ClusterConfig,
    "training": TrainingConfig,
    "moderation": ModerationConfig,
    "image_filter": ImageFilterConfig,
    "provenance": ProvenanceConfig,
    "operations": OperationsConfig,
    "web": WebConfig,
    "telegram": TelegramConfig,
    "discord": DiscordConfig,
}

# Range checks: key -> (predicate, what is allowed).
_Check = tuple[Callable[[Any], bool], str]
_CHECKS: dict[str, _Check] = {
    "log_level": (lambda v: v in LOG_LEVELS, f"one of {', '.join(LOG_LEVELS)}"),
    "log_format": (lambda v: v in LOG_FORMATS, f"one of {', '.join(LOG_FORMATS)}"),
    "cluster.address": (
        lambda v: v in ("", "auto") or _address(v.removeprefix("ray://")) is not None,
        '"" (no cluster), "auto", HOST:PORT or ray://HOST:PORT',
    ),
    "cluster.lanes": (lambda v: 0 <= v <= 1024, "0 (one per GPU) up to 1024"),
    "operations.listen": (
        lambda v: v == "" or _address(v) is not None,
        '"" (off) or HOST:PORT, such as "127.0.0.1:9464"',
    ),
    "web.listen": (
        lambda v: v == "" or _address(v) is not None,
        '"" (off) or HOST:PORT, such as "127.0.0.1:8080"',
    ),
    "web.public_url": (
        lambda v: v == "" or re.fullmatch(r"https?://[^\s/?#]+(/[^\s?#]*)?", v) is not None,
        '"" or the http(s) URL the console is reached at, such as "https://admin.example.org"',
    ),
    # Chat buttons carry the version shown (Telegram allows 64 bytes of button data).
    "consent.version": (
        lambda v: re.fullmatch(r"[A-Za-z0-9._-]{1,32}", v) is not None,
        "1 to 32 letters, digits, dots, dashes or underscores",
    ),
    "model.base": (lambda v: bool(v.strip()), '"tiny", a hub model id or a local directory'),
    "model.family": (
        lambda v: v == "auto" or v in FAMILY_NAMES,
        f'"auto" or one of {", ".join(FAMILY_NAMES)}',
    ),
    "engine.device": (
        lambda v: v in ("auto", "cpu", "cuda") or re.fullmatch(r"cuda:\d+", v) is not None,
        '"auto", "cpu", "cuda" or "cuda:N"',
    ),
    "engine.max_attempts": (lambda v: 1 <= v <= 20, "1 to 20"),
    "engine.max_training_wait": (lambda v: 0 <= v <= 1e9, "0 to 1e9 seconds"),
    "engine.quantize": (lambda v: v in QUANTIZE_MODES, f"one of {', '.join(QUANTIZE_MODES)}"),
    "engine.compile": (lambda v: v in COMPILE_MODES, f"one of {', '.join(COMPILE_MODES)}"),
    "engine.lora_prefetch": (
        lambda v: v in PREFETCH_MODES,
        f"one of {', '.join(PREFETCH_MODES)}",
    ),
    "engine.batch": (lambda v: 0 <= v <= 64, "0 (8 on CUDA, 1 elsewhere) to 64 pictures"),
    "moderation.classifier_file": (
        lambda v: v == "" or v.endswith(".safetensors"),
        '"" (the packaged model) or a .safetensors file',
    ),
    "engine.max_jobs_per_user": (lambda v: 1 <= v <= 100, "1 to 100"),
    "engine.start_timeout": (lambda v: 1 <= v <= 3600, "1 to 3600 seconds"),
    "training.min_photos": (lambda v: 1 <= v <= 200, "1 to 200"),
    "training.rank": (lambda v: 0 <= v <= 256, "0 (family default) to 256"),
    "training.alpha": (lambda v: 0 <= v <= 512, "0 (family default) to 512"),
    "training.learning_rate": (lambda v: 0 <= v < 1, "0 (family default) or a rate below 1"),
    "training.steps": (lambda v: 0 <= v <= 100_000, "0 (family default) to 100000"),
    "training.batch_size": (lambda v: 0 <= v <= 64, "0 (family default) to 64"),
    "training.checkpoint_every": (lambda v: v >= 0, "0 (every tenth of the run) or more"),
    "training.sample_every": (lambda v: v >= 0, "0 (none) or more"),
    "training.class_images": (lambda v: 1 <= v <= 1000, "1 to 1000"),
    "training.method": (
        lambda v: v in TRAINING_METHODS,
        f"one of {', '.join(TRAINING_METHODS)}",
    ),
    "training.prior_loss_weight": (lambda v: 0 < v <= 10, "above 0, at most 10"),
    "moderation.strikes_to_suspend": (lambda v: 1 <= v <= 100, "1 to 100"),
    "moderation.strike_window_hours": (lambda v: 0 < v <= 24 * 365, "above 0, at most 8760"),
    "moderation.images_per_day": (lambda v: 0 <= v <= 100_000, "0 (none) to 100000"),
    "moderation.trainings_per_week": (lambda v: 0 <= v <= 1000, "0 (none) to 1000"),
    "moderation.commands_per_minute": (lambda v: 0 < v <= 6000, "above 0, at most 6000"),
    "moderation.command_burst": (lambda v: 1 <= v <= 1000, "1 to 1000"),
    "image_filter.blocked_classes": (
        lambda v: all(k in NUDENET_LABELS and 0 < t <= 1 for k, t in v.items()),
        f"NudeNet classes ({', '.join(NUDENET_LABELS)}) with thresholds above 0, at most 1",
    ),
    "telegram.api_base_url": (lambda v: v.startswith(("http://", "https://")), "an http(s) URL"),
    "telegram.file_base_url": (lambda v: v.startswith(("http://", "https://")), "an http(s) URL"),
    "telegram.webhook_url": (lambda v: not v or v.startswith("https://"), "empty or https URL"),
    "telegram.webhook_port": (lambda v: 1 <= v <= 65535, "1 to 65535"),
    "telegram.edit_interval": (lambda v: 0 <= v <= 60, "0 to 60 seconds"),
    "telegram.admin_ids": (lambda v: all(x.isdigit() for x in v), "numeric Telegram user ids"),
    "discord.api_base_url": (lambda v: v.startswith(("http://", "https://")), "an http(s) URL"),
    "discord.gateway_url": (lambda v: v.startswith(("ws://", "wss://")), "a ws(s) URL"),
    "discord.guild_ids": (lambda v: all(x.isdigit() for x in v), "numeric guild ids"),
    "discord.admin_ids": (lambda v: all(x.isdigit() for x in v), "numeric Discord user ids"),
    "discord.edit_interval": (lambda v: 0 <= v <= 60, "0 to 60 seconds"),
    "intake.max_file_mb": (lambda v: 0 < v <= 200, "a number of megabytes above 0, at most 200"),
    "intake.max_pixels": (lambda v: 10_000 <= v <= 200_000_000, "10000 to 200000000"),
    "intake.min_side_px": (lambda v: 32 <= v <= 4096, "32 to 4096"),
    "intake.max_aspect_ratio": (lambda v: 1 <= v <= 20, "a ratio of 1 to 20"),
    "intake.working_max_side": (lambda v: 512 <= v <= 8192, "512 to 8192"),
    "intake.max_photos": (lambda v: 1 <= v <= 200, "1 to 200"),
    "intake.min_face_fraction": (lambda v: 0 < v < 1, "a fraction between 0 and 1"),
    "intake.min_face_px": (lambda v: 20 <= v <= 1024, "20 to 1024"),
    "intake.second_face_ratio": (lambda v: 0 < v < 1, "a fraction between 0 and 1"),
    "intake.second_face_min_score": (lambda v: v >= 0, "a detector score at least 0"),
    "intake.identity_threshold": (lambda v: 0 < v < 2, "a distance between 0 and 2"),
    "intake.min_sharpness": (lambda v: v >= 0, "a number at least 0"),
    "intake.duplicate_hash_distance": (lambda v: 0 <= v <= 32, "0 to 32 bits"),
    "intake.detection_max_side": (lambda v: 256 <= v <= 4096, "256 to 4096"),
}


def load_config(
    path: Path | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    data_dir: Path | None = None,
) -> Config:
    """Read the TOML file at `path` (if any), apply the environment, validate everything.

    `data_dir` (from the command line) wins over SELFIEBOOTH_DATA_DIR, which wins over
    the file.
    """
    env = os.environ if environ is None else environ
    raw: dict[str, Any] = {}
    if path is not None:
        try:
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"config file {str(path)!r} does not exist") from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"config file {str(path)!r} is not valid TOML: {exc}") from None

    for secret in _SECRET_KEYS:
        section = secret.removesuffix("_token")
        if secret in raw or "token" in raw.get(section, {}):
            env_name = ENV_PREFIX + _SECRET_KEYS[secret]
            raise ConfigError(
                f"{section}.token: tokens are never read from the config file; "
                f"set the environment variable {env_name} instead"
            )

    if env.get(ENV_PREFIX + "DATA_DIR"):
        raw["data_dir"] = env[ENV_PREFIX + "DATA_DIR"]
    if data_dir is not None:
        raw["data_dir"] = str(data_dir)

    config: Config = _build(Config, raw, prefix="")
    signing = config.provenance
    if bool(signing.certificate) != bool(signing.private_key):
        raise ConfigError(
            "provenance.certificate and provenance.private_key go together: set both or neither"
        )
    for key, file in (("certificate", signing.certificate), ("private_key", signing.private_key)):
        if file and not Path(file).expanduser().is_file():
            raise ConfigError(f"provenance.{key} = {file!r}: there is no such file")
    _check_family(config)
    return dataclasses.replace(
        config,
        telegram_token=_secret(env, "telegram_token"),
        discord_token=_secret(env, "discord_token"),
    )


def _check_family(config: Config) -> None:
    """What the configured model family cannot do, refused before anything starts."""
    model = config.model
    try:
        family = resolve_family(model.base, model.family)
    except ValueError as exc:
        raise ConfigError(f"model.family = {model.family!r}: {exc}") from None
    if config.training.method not in family.methods:
        raise ConfigError(
            f"training.method = {config.training.method!r}: {family.name} models are trained "
            f"by {', '.join(family.methods)} only"
        )
    if family.pipeline != "flux":
        if config.engine.quantize != "none":
            raise ConfigError(
                f"engine.quantize = {config.engine.quantize!r} is for FLUX's transformer; "
                f'{family.name} models run unquantized: set it to "none"'
            )
        return
    # The tools' SD models (a ControlNet made from the UNet, an inpainting UNet) have no
    # FLUX counterpart here; "auto" only ever meant the tiny SD model's own ControlNet.
    if model.controlnet not in ("", "auto"):
        raise ConfigError(
            f"model.controlnet = {model.controlnet!r}: edge control is for SD 1.x and SDXL "
            'models; with FLUX set it to ""'
        )
    if model.inpainting:
        raise ConfigError(
            f"model.inpainting = {model.inpainting!r}: FLUX inpaints with the base model "
            'itself; set it to ""'
        )


def _secret(env: Mapping[str, str], key: str) -> Secret | None:
    value = env.get(ENV_PREFIX + _SECRET_KEYS[key])
    return Secret(value) if value else None


def _build(cls: type[Any], raw: Mapping[str, Any], prefix: str) -> Any:
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{prefix.rstrip('.')}: expected a table, got {raw!r}")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls) if f.name not in _SECRET_KEYS}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ConfigError(
            f"unknown key {prefix + unknown[0]!r}; allowed keys here: {', '.join(sorted(known))}"
        )
    values: dict[str, Any] = {}
    for name, value in raw.items():
        key = prefix + name
        if name in _SECTIONS:
            values[name] = _build(_SECTIONS[name], value, prefix=key + ".")
            continue
        values[name] = _coerce(key, value, hints[name])
        check = _CHECKS.get(key)
        if check is not None and not check[0](values[name]):
            raise ConfigError(f"{key} = {value!r} is out of range; allowed: {check[1]}")
    return cls(**values)


def _coerce(key: str, value: Any, hint: Any) -> Any:
    if isinstance(hint, types.UnionType):
        hint = next(t for t in typing.get_args(hint) if t is not type(None))
    if hint is Path:
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{key} = {value!r} is not allowed; expected a path as a string")
        return Path(value).expanduser()
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key} = {value!r} is not allowed; expected true or false")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key} = {value!r} is not allowed; expected a whole number")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{key} = {value!r} is not allowed; expected a number")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key} = {value!r} is not allowed; expected a string")
        return value
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is tuple and args == (str, Ellipsis):
        # Ids: numbers or strings in the file, strings inside.
        if not isinstance(value, list) or not all(
            isinstance(v, str | int) and not isinstance(v, bool) for v in value
        ):
            raise ConfigError(f"{key} = {value!r} is not allowed; expected a list of ids")
        return tuple(str(v) for v in value)
    if origin is dict and args == (str, float):
        if not isinstance(value, Mapping) or not all(
            isinstance(v, int | float) and not isinstance(v, bool) for v in value.values()
        ):
            raise ConfigError(f"{key} = {value!r} is not allowed; expected a table of numbers")
        return {str(k): float(v) for k, v in value.items()}
    raise ConfigError(f"{key}: unsupported setting type {hint!r}")  # a programming error


def _address(value: str) -> tuple[str, int] | None:
    """HOST:PORT as (host, port), or None when it is not one ([::1]:9464 for IPv6)."""
    host, _, port = value.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        return None
    return host, int(port)


def listen_address(config: OperationsConfig | WebConfig) -> tuple[str, int] | None:
    """Where the operations endpoint (or the web console) listens; None when it is off."""
    return _address(config.listen) if config.listen else None
