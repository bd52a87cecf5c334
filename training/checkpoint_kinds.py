"""The kinds of checkpoint `inr` writes, and what one holds in words: the error that refuses a checkpoint where
another kind is expected names what it was given (a decoder handed to `jiio-robust`, a classifier handed to
`jiio-invert`, a fitted network handed to either)."""

from __future__ import annotations

DECODER_KIND = "mdeq-decoder"  # `inr jiio-invert`
CLASSIFIER_KIND = "mdeq-classifier"  # `inr jiio-robust`
# A fitted coordinate network (`inr fit`) has no kind; its payload describes its signal instead.


def checkpoint_holds(payload: dict) -> str:
    """What ``payload`` holds, as the object of "it holds ...": e.g. "a JIIO image decoder (`inr jiio-invert`)"."""
    kind = payload.get("kind")
    if kind == DECODER_KIND:
        return "a JIIO image decoder (`inr jiio-invert`)"
    if kind == CLASSIFIER_KIND:
        return "a robust MDEQ classifier (`inr jiio-robust`)"
    signal = payload.get("signal")
    if isinstance(signal, dict):
        return f"a fitted {signal.get('kind', 'unknown')} network (`inr fit`)"
    return "nothing inr wrote"
