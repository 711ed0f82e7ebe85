from django.contrib import admin


class OneRowInline(admin.StackedInline):
    """A row there is at most one of per parent (a schedule's policy, its alerts), shown as one
    set of fields; without the row, the defaults shown apply."""

    max_num = 1
    can_delete = False
    template = "admin/shared/one_row_inline.html"
