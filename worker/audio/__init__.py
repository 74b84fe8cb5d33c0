"""The detector (issue 3): who or what is on the far end of the call.

`HoldDetector` (detector.py) is the facade; the rest are its pure parts:
features.py (per-frame features), tones.py (tones and cadences),
classifier.py (frame labels), fingerprint.py (recordings heard before),
human.py (the decision).
"""

from .detector import DetectorEvent, DetectorParams, HoldDetector
from .fingerprint import Fingerprint, FingerprintError

__all__ = ["DetectorEvent", "DetectorParams", "Fingerprint", "FingerprintError", "HoldDetector"]
