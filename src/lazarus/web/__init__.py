"""The web dashboard (docs/dashboard.md): a Starlette app served by uvicorn beside the XML-RPC
server, under /ui/. It holds no key of its own: every page reads and every action acts through
the API dispatcher with the logged-in user's own session, so authorization is the API's.
"""
