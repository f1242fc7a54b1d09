"""`warehouse-voice demo`: a scripted shift through every real part, offline."""
