"""The published document's request and response examples, as ``/openapi.json`` shows them.

Copied from the document (``tests/rest_bridge/test_openapi_docs.py`` checks they
still equal it, value for value); the URLs are the document's placeholders.
"""

from __future__ import annotations

from typing import Any

from genserve.vocabulary import Kind

IMAGE_REQUEST: dict[str, Any] = {
    "prompt": "A beautiful sunset over mountains with reflection in a lake",
    "aspect_ratio": "16:9",
    "output_format": "webp",
    "num_images": 2,
}
IMAGE_RESPONSE: dict[str, Any] = {
    "success": True,
    "data": {
        "images": [
            {
                "url": "https://cdn.example.com/image1.webp",
                "content_type": "image/webp",
                "file_name": "generated-image-12345-1.webp",
                "file_size": 145678,
                "width": 1920,
                "height": 1080,
                "aspect_ratio": "16:9",
            }
        ],
        "generation_id": "507f1f77bcf86cd799439011",
        "generation_time": 2450,
        "remaining_points": 92,
        "request_id": "req_123456789",
    },
}

VIDEO_REQUEST: dict[str, Any] = {
    "prompt": "A spaceship flying through a colorful nebula with stars in background",
    "model": "vidu-q2",
    "duration": 4,
    "resolution": "720p",
    "aspect_ratio": "16:9",
}
VIDEO_RESPONSE: dict[str, Any] = {
    "success": True,
    "data": {
        "video": {
            "url": "https://cdn.example.com/video-12345.mp4",
            "content_type": "video/mp4",
            "file_name": "generated-video-12345.mp4",
            "file_size": 4567890,
            "width": 1280,
            "height": 720,
            "duration": 4,
            "resolution": "720p",
            "aspect_ratio": "16:9",
            "model": "vidu-q2",
            "generation_id": "507f1f77bcf86cd799439012",
        },
        "generation_time": 32450,
        "remaining_points": 82,
        "request_id": "req_123456790",
    },
}

THREE_D_REQUEST: dict[str, Any] = {
    "image_url": "https://example.com/object.jpg",
    "texture_quality": "standard",
    "texture_alignment": "original_image",
    "orientation": "default",
}
THREE_D_RESPONSE: dict[str, Any] = {
    "success": True,
    "data": {
        "model": {
            "url": "https://cdn.example.com/model-12345.glb",
            "preview_image": "https://cdn.example.com/preview-12345.jpg",
            "content_type": "model/gltf-binary",
            "file_name": "3d-model-12345.glb",
            "file_size": 12345678,
            "texture_quality": "standard",
            "generation_id": "507f1f77bcf86cd799439013",
        },
        "generation_time": 45678,
        "remaining_points": 62,
        "request_id": "req_123456791",
    },
}

PROJECTS_QUERY: dict[str, Any] = {
    "type": "images",
    "page": 1,
    "limit": 10,
    "sort": "createdAt",
    "order": "desc",
}
"""``GET /api/v1/projects?type=images&page=1&limit=10&sort=createdAt&order=desc``."""
PROJECTS_RESPONSE: dict[str, Any] = {
    "success": True,
    "data": {
        "projects": [
            {
                "id": "507f1f77bcf86cd799439011",
                "type": "image",
                "prompt": "A beautiful sunset...",
                "created_at": "2024-01-15T10:30:00Z",
                "url": "https://cdn.example.com/image1.webp",
                "thumbnail": "https://cdn.example.com/thumb1.webp",
                "metadata": {
                    "aspect_ratio": "16:9",
                    "file_size": 145678,
                    "dimensions": "1920x1080",
                },
            }
        ],
        "pagination": {"page": 1, "limit": 10, "total": 45, "pages": 5, "has_more": True},
    },
}

GENERATION_EXAMPLES: dict[Kind, tuple[dict[str, Any], dict[str, Any]]] = {
    "image": (IMAGE_REQUEST, IMAGE_RESPONSE),
    "video": (VIDEO_REQUEST, VIDEO_RESPONSE),
    "3d": (THREE_D_REQUEST, THREE_D_RESPONSE),
}
"""Each kind's request example and the 200 answer the document shows for it."""
