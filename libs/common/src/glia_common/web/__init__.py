"""What both HTTP services share: problem details, request ids, auth, health."""
