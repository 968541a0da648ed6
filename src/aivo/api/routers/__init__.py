"""Thin routers: parse the request, call one service function, format the answer."""
