"""Who said it: speaker embeddings (encoder.py), clustering (cluster.py) and the
diarization of a transcribed file (diarize.py). Engine layer: knows no sessions or web."""
