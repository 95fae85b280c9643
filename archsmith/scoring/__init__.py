"""The sealed scoreboard: candidate code trains and exports; a separate process measures."""
