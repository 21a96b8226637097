"""The service desk: staff accounts and roles, the console, approved answers and data-subject requests."""
