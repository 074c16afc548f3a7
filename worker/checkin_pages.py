"""Email check-in pages: one-click answers and the PHQ-9 web form. (Filled in by the check-in work.)"""

from fastapi import APIRouter

router = APIRouter()
