"""Live performance: the player, MIDI pads, set files, loops and tempo."""
