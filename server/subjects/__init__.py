"""The subject's contact points (normalised email and phone) and the suppression list of erased addresses."""
