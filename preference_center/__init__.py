"""The embeddable preference center (routes, templates, static files). Built in the preference-center issue."""
