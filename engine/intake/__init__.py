"""Photo intake: what a selfie is, and whether it belongs in a user's training set."""

from engine.intake.analyze import PhotoAnalysis, analyze_photo
from engine.intake.decode import check_header, decode_image, encode_jpeg, encode_png
from engine.intake.errors import PhotoRefused
from engine.intake.faces import FaceAnalyzer
from engine.intake.selection import Candidate, KnownPhoto, identity_outliers, judge_set
from engine.intake.settings import IntakeSettings

__all__ = [
    "Candidate",
    "FaceAnalyzer",
    "IntakeSettings",
    "KnownPhoto",
    "PhotoAnalysis",
    "PhotoRefused",
    "analyze_photo",
    "check_header",
    "decode_image",
    "encode_jpeg",
    "encode_png",
    "identity_outliers",
    "judge_set",
]
