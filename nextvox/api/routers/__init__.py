"""One router per concern: health, tracks, audio, recommendations, radio and playlists, map, web page."""
