"""Data sets of the workshop: bundled digits, synthetic scenes, image folders, COCO."""
