from django.urls import path

from emails.api.callbacks import email_callback
from emails.api.read import EmailDetailApi, EmailListApi
from emails.api.send import EmailSendApi

urlpatterns = [
    path("transactional/email/send", EmailSendApi.as_view(), name="email-send"),
    path("transactional/email", EmailListApi.as_view(), name="email-list"),
    path("transactional/email/<str:email_id>", EmailDetailApi.as_view(), name="email-detail"),
    path("callback/email", email_callback, name="email-callback"),
]
