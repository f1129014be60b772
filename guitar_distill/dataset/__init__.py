"""The data stage: scan, validate, de-duplicate, split (manifest), decode cache, augmentation."""
