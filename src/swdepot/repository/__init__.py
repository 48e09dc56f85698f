"""The package repository: blob stores (two node copies) and the package catalog."""
