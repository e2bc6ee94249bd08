"""The boto3 edge: one module per AWS service, every call off the event loop, one typed error (AwsError)."""
