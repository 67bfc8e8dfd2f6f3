"""The OpenAI-compatible HTTP API the coordinator serves (FastAPI on uvicorn, on the coordinator's loop).

`requests.py` checks request bodies (field-naming 400s), `app.py` holds the routes, `server.py` binds
uvicorn beside the coordinator and decides whether a bearer key is needed.
"""
