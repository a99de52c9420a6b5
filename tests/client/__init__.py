"""The Python live client against real servers and a scripted peer, on asyncio and trio."""
