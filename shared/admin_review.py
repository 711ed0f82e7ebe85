from django.contrib import admin


class ReviewOnlyAdmin(admin.ModelAdmin):
    """For rows that processes write and people review: runs, results, heartbeats.

    Adding or editing one by hand would only falsify the record.
    """

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False
