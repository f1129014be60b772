"""The edge bundle checked where it will run: `pi_check` (aarch64 under QEMU) and `web_check` (headless Chromium)."""
