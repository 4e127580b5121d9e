"""The vision models take any image size that is a multiple of the patch size."""
import pytest
import torch

from gradkit.models import CNNClassifier, PLSTMVision, ViTClassifier


@pytest.mark.parametrize("make", [
    lambda: PLSTMVision(1, 3, dim=8, depth=1, num_heads=1, patch_size=4, grid=4),
    lambda: ViTClassifier(1, 3, dim=8, depth=1, num_heads=2, patch_size=4, grid=4),
    lambda: CNNClassifier(1, 3, channels=8, depth=1, patch_size=4),
])
def test_any_image_size(make):
    torch.manual_seed(0)
    model = make()
    for side in (16, 24, 32):  # grids 4x4 (the position embedding's own), 6x6 and 8x8 (resized)
        assert model(torch.rand(2, 1, side, side)).shape == (2, 3)
    if hasattr(model, "embed"):
        with pytest.raises(ValueError, match="multiples of patch_size 4"):
            model(torch.rand(1, 1, 18, 16))


def test_position_embedding_is_resized_only_for_other_grids():
    torch.manual_seed(1)
    embed = ViTClassifier(1, 2, dim=8, depth=1, num_heads=2, patch_size=4, grid=4).embed
    x = torch.rand(1, 1, 16, 16)
    torch.testing.assert_close(embed(x), (embed.proj(x) + embed.position).permute(0, 2, 3, 1))
    big = torch.rand(1, 1, 32, 32)
    resized = torch.nn.functional.interpolate(embed.position, size=(8, 8), mode="bicubic", align_corners=False)
    torch.testing.assert_close(embed(big), (embed.proj(big) + resized).permute(0, 2, 3, 1))
