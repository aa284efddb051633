"""The engine: everything that touches images and models (photo intake now; training,
generation and safety filters later). It never imports a chat platform's library."""
