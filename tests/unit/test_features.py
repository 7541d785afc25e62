"""The CTranslate2 replica's own log-mel features equal the checkpoint's feature extractor."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize("mels", [80, 128])
def test_the_replicas_log_mel_is_the_checkpoints_feature_extractor(mels: int) -> None:
    """Real speech and digital silence, padded to 30 s: the same features as Transformers computes."""
    import numpy as np
    from transformers import WhisperFeatureExtractor

    from tests.clips import JFK
    from tuned_whisper.audio import decode_audio
    from tuned_whisper.engine.features import log_mel

    extractor = WhisperFeatureExtractor(feature_size=mels)
    speech = decode_audio(str(JFK.path))
    for audio in (speech, np.zeros(16000, np.float32)):
        window = np.zeros(480000, np.float32)
        window[: len(audio)] = audio
        theirs = extractor(window, sampling_rate=16000, return_tensors="np").input_features[0]
        assert log_mel(window, mels).shape == theirs.shape == (mels, 3000)
        assert np.abs(log_mel(window, mels) - theirs).max() < 1e-4
