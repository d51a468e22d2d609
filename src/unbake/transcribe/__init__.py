"""MIDI from stems: monophonic lines (bass, lead vocal) and drums, with the track's tempo map."""
