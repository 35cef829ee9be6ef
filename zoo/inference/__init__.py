"""Loading exported models with no training dependencies: `zoo.inference.load(DIR).predict(inputs)`."""
