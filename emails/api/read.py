from rest_framework.views import APIView


class EmailDetailApi(APIView):
    pass


class EmailListApi(APIView):
    pass
