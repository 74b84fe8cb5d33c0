"""A stand-in FreeSWITCH: real ESL and mod_audio_fork wire protocol, scripted companies."""
