"""What Django's error pages and mails may show of the settings: nothing that holds a secret.

Django's filter hides settings named like a secret (PASSWORD, KEY, TOKEN...), but a URL with its
password in it goes by another name: CELERY_BROKER_URL showed the Redis password on DEBUG's
error page. Here any setting whose name says it holds a URL, a database or a broker is hidden
too, and any value anywhere that looks like a URL with a password has the password cut out.
"""

import re

from django.views.debug import SafeExceptionReporterFilter

PASSWORD_IN_URL = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)(?P<user>[^:/@\s]*):[^@/\s]+@", re.IGNORECASE)


class SecretsFilter(SafeExceptionReporterFilter):
    hidden_settings = re.compile(
        "API|AUTH|TOKEN|KEY|SECRET|PASS|SIGNATURE|HTTP_COOKIE|URL|DATABASE|BROKER|BACKEND|CREDENTIAL",
        flags=re.IGNORECASE,
    )

    def cleanse_setting(self, key, value):
        value = super().cleanse_setting(key, value)
        if isinstance(value, str):
            # str(): a lazy string (django-axes' AXES_USERNAME_FORM_FIELD) passes isinstance, not re.
            return PASSWORD_IN_URL.sub(rf"\g<scheme>\g<user>:{self.cleansed_substitute}@", str(value))
        return value
