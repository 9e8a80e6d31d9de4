"""HTTP API: Flask app (`create_app`) served by waitress (`serve`)."""
