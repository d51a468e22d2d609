"""The studio's API, one router per resource."""

from . import jobs, models, pages, projects, renders, stems

ROUTERS = (pages.router, models.router, jobs.router, stems.router, renders.router, projects.router)
