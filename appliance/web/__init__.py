"""Pieces shared by the web apps (console and portal): languages, templates, security, errors."""
