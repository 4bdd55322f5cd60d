"""possim: a hardware simulator and conformance test harness for card-present payments."""

__version__ = "0.1.0"
