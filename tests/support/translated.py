"""dist/sam.json as CloudFormation gets it: its code in S3, transformed by aws-sam-translator.

aws-sam-translator is the library SAM itself uses; its managed-policy loader reads IAM, here
the moto server's (the `aws_endpoint` fixture must be active).
"""

from __future__ import annotations

import copy
from typing import Any

from samtranslator.public.translator import ManagedPolicyLoader
from samtranslator.translator.transform import transform

from tests.support.packaged import Packaged


def translate(packaged: Packaged, code_uri: str, iam: Any) -> dict[str, Any]:
    """The packaged SAM template with CodeUri pointing at `code_uri`, as plain CloudFormation."""
    sam = copy.deepcopy(packaged.template)
    for resource in sam["Resources"].values():
        if resource.get("Type") == "AWS::Serverless::Function":
            resource["Properties"]["CodeUri"] = code_uri
    return transform(sam, {}, ManagedPolicyLoader(iam))
