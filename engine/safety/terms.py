"""Default term lists of the prompt filter, per category, in English, German, French and
Spanish, written in normalised form (lower case, no accents).

A term matches as a whole word or phrase, plural and common endings included; a term
ending in "*" matches any word it begins. Admins add terms at run time; they can remove
default terms only outside the hard categories.
"""

from __future__ import annotations

__all__ = [
    "AGE_PATTERNS",
    "CATEGORIES",
    "DEFAULT_TERMS",
    "HARD_CATEGORIES",
    "SAFE_PHRASES",
    "UNDRESSING",
]

# Checked in this order: the first category that matches is the one reported.
CATEGORIES: tuple[str, ...] = ("minors", "sexual", "self-harm", "violence", "hate")
# With a personal likeness in every picture, nothing here is ever allowed, whatever the
# settings say: no nudity or sex, and nothing that makes the person a child.
HARD_CATEGORIES: frozenset[str] = frozenset({"sexual", "minors"})

DEFAULT_TERMS: dict[str, tuple[str, ...]] = {
    "sexual": (
        # en
        "nude", "nudes", "nudity", "nudist*", "naked", "nakedness", "topless", "bottomless",
        "nsfw", "porn*", "xxx", "sex", "sexual", "sexually", "sexy", "erotic*", "explicit",
        "hentai", "lingerie", "undress*", "unclothed", "no clothes", "without clothes",
        "without any clothes", "bare breasted", "barebreasted",
        "wearing nothing", "in the nude", "stripper", "striptease", "stripping",
        "genital*", "penis", "vagina", "breasts", "boobs", "nipple*", "orgasm*", "orgy",
        "masturbat*", "fetish*", "bdsm", "onlyfans", "playboy", "boudoir", "blowjob",
        "handjob", "intercourse", "seethrough", "camgirl", "milf", "horny", "lewd",
        # de
        "nackt*", "oben ohne", "unbekleidet", "erotisch*", "bruste", "ausgezogen",
        "entkleidet", "geschlechtsverkehr",
        # fr
        "tout nu", "toute nue", "nue", "nues", "nudite", "sexe", "sexuel*", "erotique*", "seins",
        "sans vetements", "deshabille*", "denude*",
        "moi nu", "suis nu",
        # es
        "desnud*", "sexo", "sin ropa", "tetas", "senos", "erotica", "erotico",
    ),
    "minors": (
        # en
        "child", "children", "childlike", "kid", "kids", "toddler", "infant", "teen",
        "teens", "teenage*", "preteen*", "tween", "tweens", "schoolgirl*", "schoolboy*",
        "underage", "under age", "young girl", "young boy", "little girl", "little boy",
        "loli", "lolita", "shota", "jailbait", "kindergarten*", "elementary school",
        "middle school", "as a kid", "as a child", "youngster", "minor girl", "minor boy",
        "as a baby", "a baby in", "newborn", "in a crib",
        # de
        "als kind", "ein kind", "kleines kind", "kindlich*", "jugendlich*", "minderjahrig*",
        "schulmadchen", "schuljunge",
        "kleines madchen", "kleiner junge", "junges madchen", "teenagerin",
        # fr
        "enfant*", "adolescent*", "mineur*", "fillette*", "petite fille",
        "petit garcon", "jeune fille", "ecolier*", "collegien*", "lyceen*",
        # es
        "un nino", "una nina", "de nino", "de nina", "como nino", "como nina", "ninos",
        "ninas", "adolescente*", "menor de edad", "menores",
        "colegiala*", "jovencita*", "chiquill*",
    ),
    "violence": (
        # en
        "gore", "gory", "decapitat*", "behead*", "dismember*", "mutilat*", "disembowel*",
        "blood splatter", "bloodbath", "blood and guts", "corpse*", "dead body",
        "massacre*", "tortur*", "shot in the head", "slit throat", "throat slit",
        "severed head", "entrails", "execution", "murdered", "murdering", "stabbed", "stabbing",
        "gunshot wound*", "bullet wound*", "lynch*", "impaled", "burned alive",
        "head blown off", "guts spilling", "spilling guts", "hacking someone",
        "hacked to death", "stabbed to death", "beaten to death", "firing squad",
        "mass shooting", "school shooting", "killing someone", "kill someone",
        "murder victim", "pool of blood",
        # de
        "enthauptet*", "leiche*", "verstummelt*", "gedarme", "gemetzel", "folter*",
        "ermordet*", "blutbad", "abgetrennt*",
        "kopfschuss",
        # fr
        "decapite*", "cadavre*", "egorge*", "mutile*", "massacre", "ensanglante*",
        "demembre*",
        "balle dans la tete",
        # es
        "decapitad*", "cadaver*", "mutilad*", "masacre*", "asesinad*", "sangrient*",
        "desmembrad*", "degollad*",
        "disparo en la cabeza",
    ),
    "hate": (
        "nazi*", "neonazi*", "heil hitler", "sieg heil", "hitler salute", "swastika*",
        "hakenkreuz*", "kkk", "ku klux klan", "white power", "white supremac*",
        "ethnic cleansing", "holocaust denial", "race war", "master race",
        "croix gammee", "svastika", "esvastica", "limpieza etnica", "supremacia blanca",
        "supremaciste*", "ethnische sauberung", "rassenkrieg", "genocide", "genozid",
        "genocidio", "herrenrasse", "1488",
        "hitler*", "ss officer", "ss offizier", "ssoffizier", "waffen ss", "totenkopf",
        "third reich", "drittes reich", "troisieme reich", "tercer reich",
        "celebrating the holocaust", "praising the holocaust", "antisemit*",
    ),
    "self-harm": (
        # en
        "suicid*", "kill myself", "killing myself", "hang myself", "hanging myself",
        "hanged myself", "cut myself", "cutting myself", "slit wrists", "slit my wrists",
        "slitting my wrists", "cutting my wrists", "cut my wrists", "self harm",
        "selfharm", "self injury", "overdos*", "noose around my neck", "end my life",
        "shoot myself", "shooting myself", "burn myself", "burning myself",
        "drown myself", "drowning myself", "starve myself", "starving myself",
        "stab myself", "stabbing myself", "poison myself", "poisoning myself",
        "my own throat", "proana", "pro ana",
        # de
        "selbstmord*", "suizid*", "ritzen", "selbstverletzung*", "mich umbringen",
        "mich erhangen",
        "erhange mich", "pulsadern", "uberdosis",
        # fr
        "me pendre", "me suicider", "automutilation", "me tuer", "me couper les veines",
        "tranche les veines", "trancher les veines",
        # es
        "suicidio", "suicidarme", "cortarme las venas", "autolesion*", "ahorcarme",
        "matarme",
        "cortandome", "ahorcandome", "sobredosis",
    ),
}  # fmt: skip

# Negative prompts: asking the model to leave the clothes out is asking for nudity.
UNDRESSING: tuple[str, ...] = (
    "clothes", "clothing", "clothed", "garment*", "underwear", "bra", "bras", "panties",
    "swimsuit*", "bikini*", "dressed", "kleidung", "bekleidet", "vetement*", "habille*",
    "ropa", "vestid*",
)  # fmt: skip

# A child's age: "15 years old", "15yo", "16-year-old", "age 12", "14 jahre", "13 ans".
AGE_PATTERNS: tuple[str, ...] = (
    r"(?<!\d)(?:1[0-7]|[1-9])\s*-?\s*(?:years?|yrs?|yo|y o|year old|jahre?|jahrig\w*"
    r"|ans?|anos?)\b",
    r"\b(?:age|aged|alter|age de|edad)\s*(?:of\s*)?(?:1[0-7]|[1-9])(?!\d)",
    r"\b(?:i'?m|i am|look(?:s|ing)?\s+like\s+(?:i'?m\s+|a\s+)?)\s*(?:1[0-7]|[1-9])(?!\d)"
    r"(?!\s*(?:am|pm|o'?clock|%|feet|foot|ft|meters?|m\b))",
)

# Innocent phrases with a blocked word inside, taken out before matching.
SAFE_PHRASES: tuple[str, ...] = (
    r"\bnude\s*-?\s*(?:colou?r\w*|heels?|lip\w*|make\s*-?\s*up|tones?|shades?|palette|pumps)",
    r"\bnaked eye\b",
)
