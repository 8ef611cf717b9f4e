"""The hardware-free demo; its config ships as package data beside this file."""
