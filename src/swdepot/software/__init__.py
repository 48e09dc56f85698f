"""ONTAP's cluster software domain: downloads, packages and the software profile."""
