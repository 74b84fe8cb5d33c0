"""Hold Slayer worker: drives FreeSWITCH legs over ESL and watches the hold."""
