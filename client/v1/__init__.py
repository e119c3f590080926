"""Generated stubs of protos/senti/v1/senti.proto (`make proto`); do not edit."""
