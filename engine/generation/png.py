"""PNG encoding that says what made the image: parameters and an AI-generated statement.

The statement is in three places a reader may look: a `Disclaimer` text chunk, the
`parameters` JSON, and XMP's IPTC digital source type "trainedAlgorithmicMedia".
"""

from __future__ import annotations

import io
import json

from PIL import Image
from PIL.PngImagePlugin import PngInfo

from engine.provenance import DIGITAL_SOURCE_TYPE

__all__ = ["AI_STATEMENT", "DIGITAL_SOURCE_TYPE", "encode_png_with_metadata"]

AI_STATEMENT = "AI-generated image: made by selfiebooth with an image model; not a real photo."
_XMP = (
    '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF '
    'xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
    '<rdf:Description rdf:about="" '
    'xmlns:Iptc4xmpExt="http://iptc.org/std/Iptc4xmpExt/2008-02-29/">'
    f"<Iptc4xmpExt:DigitalSourceType>{DIGITAL_SOURCE_TYPE}</Iptc4xmpExt:DigitalSourceType>"
    "</rdf:Description></rdf:RDF></x:xmpmeta>"
)


def encode_png_with_metadata(image: Image.Image, parameters: dict[str, str | int | float]) -> bytes:
    info = PngInfo()
    info.add_text("Software", "selfiebooth")
    info.add_text("Disclaimer", AI_STATEMENT)
    info.add_itxt(
        "parameters", json.dumps({**parameters, "ai_generated": True}, ensure_ascii=False)
    )
    info.add_itxt("XML:com.adobe.xmp", _XMP)
    out = io.BytesIO()
    image.convert("RGB").save(out, format="PNG", pnginfo=info)
    return out.getvalue()
