"""A small client for driving Glia over HTTP in tests, as a real client would."""
