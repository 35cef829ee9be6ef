"""Export of trained models to portable, verified formats (`zoo export`)."""
