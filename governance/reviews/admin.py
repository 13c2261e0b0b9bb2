"""Read-only admin for access reviews: decisions go through the review services."""

from django.contrib import admin

from governance.reviews.models import AccessReview, ReviewDecision, ReviewInstance, ReviewItem
from portal.admin import ReadOnlyAdmin

for model in (AccessReview, ReviewInstance, ReviewItem, ReviewDecision):
    admin.site.register(model, ReadOnlyAdmin)
