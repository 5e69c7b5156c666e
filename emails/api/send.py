from rest_framework.views import APIView


class EmailSendApi(APIView):
    pass
