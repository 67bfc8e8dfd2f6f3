"""Prismn desktop application (customtkinter + matplotlib + cartopy)."""
