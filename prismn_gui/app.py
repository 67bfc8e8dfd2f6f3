"""Placeholder window until the desktop app lands."""

import customtkinter as ctk


def main() -> int:
    root = ctk.CTk()
    root.title("Prismn")
    root.geometry("1280x800")
    root.mainloop()
    return 0
