"""What /status and /mydata say of each model version: how it was trained."""

from __future__ import annotations

from bot.core import Booth, Identity
from bot.core.summaries import my_data_lines, status_lines

ANN = Identity("telegram", "31")


async def test_status_and_my_data_name_how_each_version_was_trained(booth: Booth) -> None:
    await booth.accept_consent(ANN)
    user = await booth.repo.find_user(ANN.platform, ANN.user_id)
    assert user is not None
    for method in ("lora", "textual_inversion", "pivotal"):
        await booth.repo.add_lora(
            user.id,
            base_model="tiny",
            family="tiny",
            trigger_word="sbx7",
            blob="0" * 64,
            sha256="0" * 64,
            recipe={},
            method=method,
        )
    status = status_lines(await booth.status(ANN), "/start")
    models = [line for line in status if line.startswith("Model version")]
    assert models == [
        "Model version 1, trigger word sbx7",
        "Model version 2, a textual inversion (a learned trigger word), trigger word sbx7",
        "Model version 3, pivotal tuning (a LoRA and a learned trigger word), trigger word "
        "sbx7 (in use)",
    ]
    mine = my_data_lines(await booth.my_data(ANN))
    assert "  version 2: a textual inversion (a learned trigger word)" in mine
    assert not any(line.startswith("  version 1:") for line in mine)
