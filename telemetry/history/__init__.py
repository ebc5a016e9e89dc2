"""History at fleet scale: day partitions, packed device-hours, rollups and their retention."""
