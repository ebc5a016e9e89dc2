"""Optional API token (API_TOKEN): off when empty; when set, /api/v1 needs `Authorization: Bearer <token>`."""
import hmac

from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from rest_framework import authentication, exceptions, permissions

TOKEN_AUTH = "api-token"


class ApiTokenAuthentication(authentication.BaseAuthentication):
    keyword = "Bearer"

    def authenticate(self, request):
        token = settings.API_TOKEN
        if not token:
            return None
        header = authentication.get_authorization_header(request).split()
        if not header:
            return None
        if len(header) != 2 or header[0].decode("latin-1").lower() not in {"bearer", "token"}:
            raise exceptions.AuthenticationFailed("Authorization header must be `Bearer <token>`.")
        if not hmac.compare_digest(header[1], token.encode()):
            raise exceptions.AuthenticationFailed("Invalid API token.")
        return AnonymousUser(), TOKEN_AUTH

    def authenticate_header(self, request):
        return self.keyword


class ApiTokenRequired(permissions.BasePermission):
    """Everyone when API_TOKEN is empty (the default); otherwise only requests with the token."""

    def has_permission(self, request, view):
        return not settings.API_TOKEN or request.auth == TOKEN_AUTH
