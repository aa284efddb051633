"""Provenance: an invisible watermark that carries the job id of every generated image,
and signed C2PA Content Credentials (engine.provenance.credentials, kept out of this
package's import: it loads the C2PA library).

`read_job_id` is what an admin's trace uses: image bytes in, the job id (or None) out.
"""

from engine.provenance.watermark import (
    MIN_SIDE,
    TARGET_PSNR,
    WatermarkReading,
    embed,
    inspect,
    read,
    read_job_id,
)

# The IPTC digital source type of a picture made by a generative model, as the PNG's XMP
# and the C2PA manifest state it.
DIGITAL_SOURCE_TYPE = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"

__all__ = [
    "DIGITAL_SOURCE_TYPE",
    "MIN_SIDE",
    "TARGET_PSNR",
    "WatermarkReading",
    "embed",
    "inspect",
    "read",
    "read_job_id",
]
