"""Provenance: an invisible watermark that carries the job id of every generated image.

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

__all__ = ["MIN_SIDE", "TARGET_PSNR", "WatermarkReading", "embed", "inspect", "read", "read_job_id"]
