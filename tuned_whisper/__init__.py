"""tuned-whisper: fine-tune OpenAI Whisper for a domain and serve it as a speech-to-text service."""

__version__ = "0.1.0"
